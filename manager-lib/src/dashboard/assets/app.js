// xray-manager dashboard: refreshes marked parts of a page without a
// reload, asks before dangerous form posts, and drives bulk selection.
// No library; everything works without it but the refresh.
"use strict";

function refresh(el) {
  const url = el.dataset.refresh;
  const every = Math.max(2, Number(el.dataset.every) || 10) * 1000;
  const tick = async () => {
    try {
      const answer = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (answer.redirected && new URL(answer.url).pathname === "/ui/login") {
        window.location.assign("/ui/login");
        return;
      }
      if (answer.ok) {
        el.innerHTML = await answer.text();
        el.removeAttribute("data-stale");
      } else {
        el.setAttribute("data-stale", String(answer.status));
      }
    } catch (_) {
      el.setAttribute("data-stale", "network");
    }
    window.setTimeout(tick, every);
  };
  window.setTimeout(tick, every);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-refresh]").forEach(refresh);
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
  document.querySelectorAll("button[data-confirm]").forEach((button) => {
    button.addEventListener("click", (event) => {
      if (!window.confirm(button.dataset.confirm)) event.preventDefault();
    });
  });
  document.querySelectorAll("input[data-select-all]").forEach((all) => {
    const boxes = () => document.querySelectorAll("input[name='" + all.dataset.selectAll + "']");
    all.addEventListener("change", () => boxes().forEach((b) => { b.checked = all.checked; }));
  });
});
