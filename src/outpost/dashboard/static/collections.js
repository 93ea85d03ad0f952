// Collections: add a folder with live ingest progress; delete a local collection after confirming.
import { confirmDeletes, followJob, notice, postJSON, refresh } from "./common.js";

const form = document.getElementById("ingest-form");
const panel = document.getElementById("ingest-progress");
const button = document.getElementById("ingest");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const path = document.getElementById("ingest-path").value.trim();
  const collection = document.getElementById("ingest-collection").value.trim();
  if (!path || !collection) { notice("Give a folder and a collection name."); return; }
  const job = await postJSON("/ui/api/ingest", { path, collection });
  if (!job) return;
  button.disabled = true;
  panel.hidden = false;
  const bars = panel.querySelector(".bars");
  const summary = panel.querySelector(".summary");
  const errors = panel.querySelector(".errors");
  bars.replaceChildren();
  errors.replaceChildren();
  summary.textContent = `Ingesting into ${collection}…`;
  await followJob(job.id, bars, {
    result: (r) => {
      summary.textContent = `${r.collection} v${r.version}: ${r.added} added, ${r.updated} updated, ` +
        `${r.removed} removed, ${r.unchanged} unchanged; ${r.chunks_embedded} chunks embedded, ` +
        `${r.chunks_reused} reused` + (r.failures.length ? `; ${r.failures.length} file(s) could not be read:` : ".");
      errors.replaceChildren(...r.failures.map((f) => {
        const li = document.createElement("li");
        li.textContent = `${f.file}: ${f.reason}`;
        return li;
      }));
      summary.dataset.state = "done";
      refresh("[data-testid=collections-table]").then(bindDeletes);
    },
    failed: (f) => {
      summary.textContent = "";
      summary.dataset.state = "failed";
      notice(f.message);
    },
  });
  button.disabled = false;
});

function bindDeletes(root) {
  if (!root) return;
  confirmDeletes((name) => `/ui/api/collections/${encodeURIComponent(name)}/delete`, (name, row) => {
    row.remove();
    notice(`Deleted ${name}.`, "info");
  }, root);
}

bindDeletes(document);
