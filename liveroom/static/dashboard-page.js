// /dashboard/{room}: the host console's dashboard on its own. The figures (`dashboard.stats`)
// go to hosts, moderators and admins only: a viewer's token gets none.
import { $, claims, humanError, room, RoomConnection, signIn, signOut } from "/static/common.js";
import { Dashboard } from "/static/dashboard.js";

$("#title").textContent = room;
document.title = `${room} · dashboard · liveroom`;
signIn(token => {
  const dashboard = new Dashboard($("#dashboard"));
  const conn = new RoomConnection(token, {
    onItem: item => dashboard.onItem(item),
    onState: state => dashboard.onState(state),
    onStatus: (status, detail) => {
      $("#status").textContent = status === "error" ? humanError(detail) : status;
      $("#status").className = status === "connected" ? "ok" : "muted";
    },
    onSignedOut: signOut,
  });
  window.liveroom = { conn, dashboard };
  if (!["host", "moderator", "admin"].includes(claims(token).role)) {
    $("#dash-at").textContent = "the figures are for hosts, moderators and admins; this token is not one";
  }
});
