// Peerway's web app: the little it needs from the browser, with no data kept in it (no storage, no cookies
// of its own). Forms work without it; it only fills the browser's time zone and "now" into the contact form.
// Without it, the contact form reads times in the program's zone (PEERWAY_WEB_TIME_ZONE) and says so.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var zone = "";
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { zone = ""; }
  if (zone) {
    document.querySelectorAll("input[data-tz]").forEach(function (input) { input.value = zone; });
    document.querySelectorAll("[data-tz-name]").forEach(function (span) { span.textContent = zone; });
  }
  document.querySelectorAll("input[data-now]").forEach(function (input) {
    if (input.value) { return; }
    var now = new Date();
    now.setMinutes(now.getMinutes() - now.getTimezoneOffset());
    input.value = now.toISOString().slice(0, 16);
  });
});
