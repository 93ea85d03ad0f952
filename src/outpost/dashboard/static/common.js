// Shared by every dashboard page: JSON posts with the CSRF token, SSE reading, job progress, notices.

const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

/** Show one clear message at the top of the page (replacing the previous one). */
export function notice(message, kind = "error") {
  const box = document.getElementById("notice");
  box.textContent = message;
  box.className = kind === "error" ? "notice" : "notice info";
  box.hidden = !message;
}

/** The server's error message from a failed response, in plain words. */
export async function errorText(response) {
  try {
    const body = await response.json();
    const detail = body.detail ?? body.error?.message ?? body.error;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) return detail.map((d) => d.msg).join("; ");
  } catch { /* not JSON */ }
  if (response.status === 401) return "The server wants its API key: reload the page to log in.";
  return `The server answered ${response.status} ${response.statusText}`;
}

/** POST JSON (with the CSRF header). Resolves to the Response; network failures become a thrown Error. */
export async function post(url, body) {
  try {
    return await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Outpost-CSRF": csrf() },
      body: JSON.stringify(body ?? {}),
      credentials: "same-origin",
    });
  } catch (err) {
    throw new Error("Cannot reach the Outpost server: is `outpost serve` still running?");
  }
}

/** POST and return the JSON body, or show the error and return null. */
export async function postJSON(url, body) {
  let response;
  try {
    response = await post(url, body);
  } catch (err) {
    notice(err.message);
    return null;
  }
  if (!response.ok) {
    notice(await errorText(response));
    return null;
  }
  notice("");
  return response.status === 204 ? {} : response.json();
}

/** Read a text/event-stream response body, calling onEvent(name, data) per event. */
export async function readSSE(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      onEvent(name, data.length ? JSON.parse(data.join("\n")) : null);
    }
  }
}

const STAGES = { load: "Files read", embed: "Chunks embedded", download: "Downloaded (bytes)", apply: "Applied" };

function human(n, stage) {
  if (stage !== "download" && stage !== "pack") return String(n);
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} KB`;
  return `${n} B`;
}

/** One labelled <progress> per key inside `bars`, updated in place. */
export function setBar(bars, key, label, done, total, stage) {
  let bar = bars.querySelector(`[data-key="${CSS.escape(key)}"]`);
  if (!bar) {
    bar = document.createElement("div");
    bar.className = "bar";
    bar.dataset.key = key;
    bar.dataset.testid = "progress-bar";
    bar.setAttribute("data-testid", "progress-bar");
    bar.innerHTML = '<div class="label"><span class="name"></span><span class="count"></span></div><progress></progress>';
    bars.append(bar);
  }
  bar.querySelector(".name").textContent = label;
  bar.querySelector(".count").textContent = `${human(done, stage)} / ${human(total, stage)}`;
  const meter = bar.querySelector("progress");
  meter.max = Math.max(total, 1);
  meter.value = Math.min(done, meter.max);
  bar.dataset.done = String(done);
  bar.dataset.total = String(total);
}

/** Follow a background job's events (EventSource resumes by itself); handlers per event name. */
export function followJob(jobId, bars, handlers = {}) {
  return new Promise((resolve) => {
    const source = new EventSource(`/ui/api/jobs/${encodeURIComponent(jobId)}/events`);
    const on = (name, fn) => source.addEventListener(name, (e) => fn(JSON.parse(e.data)));
    on("progress", (p) => {
      if (p.stage === "pack") setBar(bars, `pack:${p.pack}`, `Pack ${p.pack}${p.applied ? " (applied)" : ""}`, p.done, p.total, "pack");
      else setBar(bars, p.stage, STAGES[p.stage] ?? p.stage, p.done, p.total, p.stage);
      handlers.progress?.(p);
    });
    on("result", (r) => handlers.result?.(r));
    on("failed", (f) => handlers.failed?.(f));
    on("end", (summary) => {
      source.close();
      resolve(summary);
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        handlers.failed?.({ message: "Lost the connection to the server while following the job" });
        resolve(null);
      }
    };
  });
}

/** Replace the element matching `selector` with the same element from a fresh render of this page. */
export async function refresh(selector) {
  try {
    const response = await fetch(location.pathname, { headers: { Accept: "text/html" }, credentials: "same-origin" });
    if (!response.ok) return null;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html").querySelector(selector);
    const current = document.querySelector(selector);
    if (fresh && current) current.replaceWith(document.adoptNode(fresh));
    return document.querySelector(selector);
  } catch {
    return null; // the table stays as it was; a reload shows the change
  }
}

/** Delete buttons that ask for confirmation inline, then POST. */
export function confirmDeletes(urlFor, done, root = document) {
  for (const button of root.querySelectorAll("[data-testid^=delete-]")) {
    const confirm = button.nextElementSibling;
    button.addEventListener("click", () => {
      button.hidden = true;
      confirm.hidden = false;
      confirm.querySelector("[data-testid=cancel-delete]").focus();
    });
    confirm.querySelector("[data-testid=cancel-delete]").addEventListener("click", () => {
      confirm.hidden = true;
      button.hidden = false;
      button.focus();
    });
    confirm.querySelector("[data-testid=confirm-delete]").addEventListener("click", async () => {
      const result = await postJSON(urlFor(button.dataset.name), {});
      if (result) done(button.dataset.name, button.closest("tr"));
      else {
        confirm.hidden = true;
        button.hidden = false;
      }
    });
  }
}
