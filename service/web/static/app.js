// Peerway's web app: the little it needs from the browser, with no data kept in it (no storage, no cookies
// of its own). Forms work without it; it only fills the browser's time zone and "now" into the contact form.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var offset = String(new Date().getTimezoneOffset());
  document.querySelectorAll("input[data-tz-offset]").forEach(function (input) { input.value = offset; });
  document.querySelectorAll("input[data-now]").forEach(function (input) {
    if (input.value) { return; }
    var now = new Date();
    now.setMinutes(now.getMinutes() - now.getTimezoneOffset());
    input.value = now.toISOString().slice(0, 16);
  });
});
