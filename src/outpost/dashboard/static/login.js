// Login: send the API key once; the server answers with an HTTP-only, same-site cookie.
import { postJSON } from "./common.js";

const form = document.getElementById("login-form");
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const result = await postJSON("/ui/login", { key: document.getElementById("key").value });
  if (result) location.assign(form.dataset.next || "/");
});
