(function () {
  "use strict";
  var boxes = document.querySelectorAll("input.filter");
  function apply() {
    var off = {};
    boxes.forEach(function (cb) { if (!cb.checked) { off[cb.name + ":" + cb.value] = true; } });
    document.querySelectorAll("[data-status]").forEach(function (el) {
      var hide = off["status:" + el.dataset.status] || off["action:" + el.dataset.action];
      if (el.tagName === "LI") { el.classList.toggle("filtered", !!hide); } else { el.hidden = !!hide; }
    });
  }
  boxes.forEach(function (cb) { cb.addEventListener("change", apply); });
  apply();
  document.body.dataset.ready = "1";
})();
