// The navigation bar's health badge: is the agent, its database and model service up?
import { api } from "./common.js";

const badge = document.getElementById("health-badge");

async function refresh() {
  try {
    const health = await api("/api/health");
    const ok = health.status === "ok";
    badge.className = `navbar-text small badge ${ok ? "text-bg-success" : "text-bg-warning"}`;
    badge.textContent = ok ? "agent ok" : `agent ${health.status}`;
    badge.title = `database: ${health.database.ok ? "ok" : health.database.detail}; ` +
      `model service: ${health.model_service.ok ? "ok" : health.model_service.detail}`;
  } catch (err) {
    badge.className = "navbar-text small badge text-bg-danger";
    badge.textContent = "agent unreachable";
    badge.title = err.message;
  }
}

refresh();
setInterval(refresh, 30000);
