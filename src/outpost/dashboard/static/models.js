// Models: pull (file or hub) with progress, create from a Modelfile, delete.
import { confirmDeletes, followJob, notice, postJSON, refresh } from "./common.js";

const pullForm = document.getElementById("pull-form");
pullForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const source = document.getElementById("pull-source").value.trim();
  const name = document.getElementById("pull-name").value.trim() || null;
  if (!source) { notice("Give a .gguf file path or hub://NAME."); return; }
  const job = await postJSON("/ui/api/models/pull", { source, name });
  if (!job) return;
  const panel = document.getElementById("pull-progress");
  const summary = panel.querySelector(".summary");
  panel.hidden = false;
  panel.querySelector(".bars").replaceChildren();
  summary.textContent = `Pulling ${source}…`;
  await followJob(job.id, panel.querySelector(".bars"), {
    result: (r) => {
      summary.textContent = `Pulled ${r.name} (${r.size}, sha256 ${r.sha256.slice(0, 12)}).`;
      summary.dataset.state = "done";
      refresh("[data-testid=models-table]").then(bindDeletes);
    },
    failed: (f) => {
      summary.textContent = "";
      summary.dataset.state = "failed";
      notice(f.message);
    },
  });
});

const createForm = document.getElementById("create-form");
createForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const result = await postJSON("/ui/api/models/create", {
    name: document.getElementById("create-name").value.trim(),
    modelfile: document.getElementById("modelfile").value,
  });
  if (result) {
    const summary = createForm.querySelector(".summary");
    summary.textContent = `Created ${result.created} from ${result.base}.`;
    summary.dataset.state = "done";
    refresh("[data-testid=models-table]").then(bindDeletes);
  }
});

function bindDeletes(root) {
  if (!root) return;
  confirmDeletes((name) => `/ui/api/models/${encodeURIComponent(name)}/delete`, (name, row) => {
    row.remove();
    notice(`Deleted ${name}.`, "info");
  }, root);
}

bindDeletes(document);
