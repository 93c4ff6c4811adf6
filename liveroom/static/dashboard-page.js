// /dashboard/{room}: the host console's dashboard on its own (a staff token is needed).
import { $, humanError, room, RoomConnection, signIn } from "/static/common.js";
import { Dashboard } from "/static/dashboard.js";

$("#title").textContent = room;
document.title = `${room} · dashboard · liveroom`;
signIn(token => {
  const dashboard = new Dashboard($("#dashboard"), token, null);
  const conn = new RoomConnection(token, {
    onItem: item => dashboard.onItem(item),
    onState: state => dashboard.onState(state),
    onStatus: (status, detail) => { $("#status").textContent = status === "error" ? humanError(detail) : status; },
  });
  window.liveroom = { conn, dashboard };
});
