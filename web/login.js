"use strict";
// The sign-in form: POST /login with JSON, then the dashboard (keeping ?kiosk=1 and the like).
document.getElementById("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const err = document.getElementById("error");
  err.textContent = "";
  const body = {
    username: document.getElementById("username").value,
    password: document.getElementById("password").value,
  };
  try {
    const r = await fetch("/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
    const j = await r.json().catch(() => ({}));
    if (r.ok && j.success) {
      location.replace("/" + location.search);
      return;
    }
    err.textContent = j.error || `sign-in failed (${r.status})`;
  } catch (x) {
    err.textContent = "brainjar does not answer";
  }
});
