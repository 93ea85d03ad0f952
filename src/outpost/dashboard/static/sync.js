// Sync: "Sync now" per hub, with live progress per pack and the outcome in plain words.
import { followJob, notice, postJSON, refresh } from "./common.js";

for (const button of document.querySelectorAll("[data-testid=sync-now]")) {
  const section = button.closest("section");
  const panel = section.querySelector(".sync-progress");
  const lastError = section.querySelector("[data-testid=last-error]");
  button.addEventListener("click", async () => {
    const job = await postJSON("/ui/api/sync", { hub: button.dataset.hub });
    if (!job) return;
    button.disabled = true;
    panel.hidden = false;
    const bars = panel.querySelector(".bars");
    const summary = panel.querySelector(".summary");
    bars.replaceChildren();
    summary.textContent = "Syncing…";
    summary.dataset.state = "running";
    await followJob(job.id, bars, {
      result: (r) => {
        const parts = Object.entries(r.updated).map(([name, [from, to]]) => `${name} v${from} → v${to}`);
        parts.push(...r.current.map((name) => `${name} up to date`));
        if (r.feedback_uploaded) parts.push(`${r.feedback_uploaded} votes uploaded`);
        summary.textContent = parts.join(" · ") || "Nothing to sync.";
        summary.dataset.state = "done";
        const failed = Object.entries(r.failed).map(([name, why]) => `${name}: ${why}`);
        lastError.hidden = !failed.length;
        lastError.textContent = failed.length ? `Last sync: ${failed.join("; ")}` : "";
        if (failed.length) notice(`Some collections did not sync: ${failed.join("; ")}`);
        const here = `section[data-hub="${CSS.escape(button.dataset.hub)}"]`;
        refresh(`${here} [data-testid=hub-table]`).then(() => refresh(`${here} [data-testid=hub-meta]`));
      },
      failed: (f) => {
        summary.textContent = "";
        summary.dataset.state = "failed";
        lastError.hidden = false;
        lastError.textContent = `Last sync: ${f.message}`;
        notice(f.message);
      },
    });
    button.disabled = false;
  });
}
