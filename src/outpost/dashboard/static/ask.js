// Ask page: stream answers over SSE, link citations to their sources, vote, keep a local history.
import { errorText, notice, post, postJSON, readSSE } from "./common.js";

const form = document.getElementById("ask-form");
const question = document.getElementById("question");
const askButton = document.getElementById("ask");
const select = document.getElementById("collections");
const model = document.getElementById("model");
const answers = document.getElementById("answers");
const historyList = document.getElementById("history");
const HISTORY_KEY = "outpost.history";
const STOPWORDS = new Set(("the and for are but not you all any can had her was one our out has him his how its may new now " +
  "who did get got let put say she too use what when where which with that this from they them then than there their " +
  "does have many much some into about would could should your been were will").split(" "));
const KNOWN = new Set(["question", "text", "sources", "model", "collection", "cited", "usage", "id"]);

// -- history (this browser only) -----------------------------------------------------------------

function loadHistory() {
  try { return JSON.parse(localStorage.getItem(HISTORY_KEY) || "[]"); } catch { return []; }
}

function saveHistory(entry) {
  const items = loadHistory().filter((h) => h.q !== entry.q || h.collections.join() !== entry.collections.join());
  items.unshift(entry);
  localStorage.setItem(HISTORY_KEY, JSON.stringify(items.slice(0, 50)));
  renderHistory();
}

function renderHistory() {
  historyList.replaceChildren(...loadHistory().map((h) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.testid = "history-item";
    button.setAttribute("data-testid", "history-item");
    button.textContent = h.q;
    button.title = `Ask again in ${h.collections.join(", ")}`;
    button.addEventListener("click", () => {
      question.value = h.q;
      for (const option of select.options) option.selected = h.collections.includes(option.value);
      form.requestSubmit();
    });
    li.append(button);
    return li;
  }));
}

document.getElementById("clear-history").addEventListener("click", () => {
  localStorage.removeItem(HISTORY_KEY);
  renderHistory();
});

// -- rendering ---------------------------------------------------------------------------------

function terms(text) {
  const words = (text.toLowerCase().match(/[\p{L}\p{N}]{3,}/gu) || []).filter((w) => !STOPWORDS.has(w));
  return [...new Set(words)].sort((a, b) => b.length - a.length);
}

/** Fill `node` with `text`, the question's terms wrapped in <mark> (text nodes only: no HTML injection). */
function highlight(node, text, words) {
  node.replaceChildren();
  if (!words.length) { node.textContent = text; return; }
  const escaped = words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const pattern = new RegExp(`(${escaped.join("|")})`, "giu");
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    node.append(text.slice(last, match.index));
    const mark = document.createElement("mark");
    mark.textContent = match[0];
    node.append(mark);
    last = match.index + match[0].length;
  }
  node.append(text.slice(last));
}

/** The answer text with [n] turned into links to source n (text nodes only). */
function renderAnswer(card, text) {
  const box = card.querySelector("[data-testid=answer]");
  const count = card.querySelectorAll("li.source").length;
  box.replaceChildren();
  let last = 0;
  for (const match of text.matchAll(/\[(\d+)\]/g)) {
    const n = Number(match[1]);
    if (n < 1 || n > count) continue;
    box.append(text.slice(last, match.index));
    const link = document.createElement("a");
    link.className = "cite";
    link.href = `#${card.id}-source-${n}`;
    link.dataset.source = String(n);
    link.setAttribute("data-testid", "citation");
    link.textContent = match[0];
    link.addEventListener("click", (event) => {
      event.preventDefault();
      openSource(card, n);
    });
    box.append(link);
    last = match.index + match[0].length;
  }
  box.append(text.slice(last));
}

function openSource(card, n) {
  const item = card.querySelector(`#${card.id}-source-${n}`);
  if (!item) return;
  for (const other of card.querySelectorAll("li.source.target")) other.classList.remove("target");
  item.classList.add("target");
  const details = item.querySelector("details");
  details.open = true;
  item.scrollIntoView({ block: "nearest" });
  details.querySelector("summary").focus();
}

function renderEvidence(node, evidence) {
  if (evidence == null) return;
  const items = Array.isArray(evidence) ? evidence : [evidence];
  node.replaceChildren(...items.map((e) => {
    const q = document.createElement("q");
    q.textContent = typeof e === "string" ? e : (e.text ?? JSON.stringify(e));
    return q;
  }));
  if (items.length) node.prepend("Evidence: ");
}

function renderSources(card, sources, words) {
  const list = card.querySelector("ol.sources");
  const template = document.getElementById("source-template");
  list.replaceChildren(...sources.map((s) => {
    const item = template.content.firstElementChild.cloneNode(true);
    item.id = `${card.id}-source-${s.number}`;
    item.dataset.number = String(s.number);
    item.querySelector(".num").textContent = `[${s.number}]`;
    item.querySelector(".doc").textContent = s.document;
    const where = [s.page != null ? `page ${s.page}` : "", s.heading || ""].filter(Boolean).join(" · ");
    item.querySelector(".where").textContent = where;
    highlight(item.querySelector(".chunk"), s.text, words);
    renderEvidence(item.querySelector(".evidence"), s.evidence);
    const [up, down] = item.querySelectorAll(".source-votes button");
    up.setAttribute("aria-label", `Source ${s.number} was useful`);
    down.setAttribute("aria-label", `Source ${s.number} was not useful`);
    up.addEventListener("click", () => vote(card, { sources: { [s.number]: true } }, up, down));
    down.addEventListener("click", () => vote(card, { sources: { [s.number]: false } }, down, up));
    return item;
  }));
}

const SHOWN = new Set([...KNOWN, "generated", "evidence", "claims", "grounding", "notice", "grounding_ms",
  "confidence"]);

/** The grounding check (when the answering path filled it): verdict, notice, and each sentence's reason. */
function renderExtras(card, answer) {
  const box = card.querySelector(".extra");
  box.replaceChildren();
  if (answer.grounding && answer.grounding !== "unchecked") {
    const pill = document.createElement("span");
    pill.className = `pill ${answer.grounding === "supported" ? "ok" : answer.grounding === "unsupported" ? "bad" : ""}`;
    pill.dataset.testid = "grounding";
    pill.setAttribute("data-testid", "grounding");
    pill.textContent = answer.grounding;
    box.append("Grounding: ", pill, " ");
    if (answer.confidence != null) {
      box.append(`· the model's confidence ${Math.round(answer.confidence * 100)}% `);
    }
  }
  if (answer.notice) {
    const note = document.createElement("p");
    note.className = "answer-notice";
    note.textContent = answer.notice;
    box.append(note);
  }
  if (answer.claims?.length) {
    const details = document.createElement("details");
    const supported = answer.claims.filter((c) => c.supported).length;
    const summary = document.createElement("summary");
    summary.textContent = `${supported} of ${answer.claims.length} sentences supported by the sources`;
    const list = document.createElement("ul");
    for (const claim of answer.claims) {
      const li = document.createElement("li");
      li.textContent = `${claim.supported ? "✓" : "✗"} ${claim.text} — ${claim.reason}`;
      list.append(li);
    }
    details.append(summary, list);
    box.append(details);
  }
  const others = Object.entries(answer).filter(([k, v]) => !SHOWN.has(k) && v !== null && v !== "" &&
    !(Array.isArray(v) && !v.length));
  if (others.length) {
    box.append(others.map(([k, v]) => `${k.replaceAll("_", " ")}: ${typeof v === "object" ? JSON.stringify(v) : v}`)
      .join(" · "));
  }
}

async function vote(card, body, pressed, other) {
  if (!card.dataset.answerId) return;
  const result = await postJSON("/ui/api/vote", { answer_id: card.dataset.answerId, ...body });
  if (!result) return;
  pressed.setAttribute("aria-pressed", "true");
  other.setAttribute("aria-pressed", "false");
  card.querySelector(".vote-status").textContent = "Thanks: queued for the next sync.";
}

let cards = 0;

function newCard(collection) {
  const card = document.getElementById("answer-template").content.firstElementChild.cloneNode(true);
  card.id = `answer-${++cards}`;
  card.dataset.collection = collection;
  card.querySelector(".answer-title").textContent = `From ${collection}`;
  card.querySelector(".status").textContent = "searching…";
  const up = card.querySelector("[data-testid=vote-up]");
  const down = card.querySelector("[data-testid=vote-down]");
  up.addEventListener("click", () => vote(card, { helpful: true }, up, down));
  down.addEventListener("click", () => vote(card, { helpful: false }, down, up));
  answers.append(card);
  return card;
}

// -- asking ------------------------------------------------------------------------------------

async function ask(event) {
  event.preventDefault();
  const q = question.value.trim();
  const chosen = [...select.selectedOptions].map((o) => o.value);
  if (!q) { notice("Type a question first."); question.focus(); return; }
  if (!chosen.length) { notice("Choose at least one collection to answer from."); select.focus(); return; }
  notice("");
  saveHistory({ q, collections: chosen, at: new Date().toISOString() });
  answers.replaceChildren();
  askButton.disabled = true;
  const errors = [];
  const words = terms(q);
  const state = {};
  try {
    const response = await post("/ui/api/ask", { question: q, collections: chosen, model: model.value || null });
    if (!response.ok) { notice(await errorText(response)); return; }
    await readSSE(response, (name, data) => {
      if (name === "start") {
        state[data.collection] = { card: newCard(data.collection), text: "" };
        return;
      }
      if (name === "end") return;
      const { card } = state[data.collection];
      if (name === "sources") {
        card.dataset.answerId = data.id;
        renderSources(card, data.sources, words);
        card.querySelector(".status").textContent = "answering…";
        card.querySelector("[data-testid=answer]").classList.add("streaming");
      } else if (name === "token") {
        state[data.collection].text += data.text;
        renderAnswer(card, state[data.collection].text);
      } else if (name === "done") {
        const box = card.querySelector("[data-testid=answer]");
        box.classList.remove("streaming");
        renderAnswer(card, data.answer.text);
        renderSources(card, data.answer.sources, words);
        renderExtras(card, data.answer);
        card.dataset.done = "true";
        card.querySelector(".status").textContent = `${data.answer.model} · answer ${data.answer.id.slice(0, 12)}`;
      } else if (name === "error") {
        errors.push(`${data.collection}: ${data.message}`);
        card.remove();
      }
    });
  } catch (err) {
    errors.push(err.message.startsWith("Cannot reach") ? err.message : `The answer stream broke: ${err.message}`);
  } finally {
    if (errors.length) notice(errors.join("\n"));
    askButton.disabled = false;
  }
}

form.addEventListener("submit", ask);
renderHistory();
question.focus();
