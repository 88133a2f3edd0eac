(function () {
  "use strict";
  var boxes = document.querySelectorAll("input.filter");
  // A filtered view can be shared: `page.html#hide=status:buggy,action:debug`.
  var wanted = /[#&]hide=([^&]*)/.exec(location.hash);
  if (wanted) {
    decodeURIComponent(wanted[1]).split(",").forEach(function (key) {
      boxes.forEach(function (cb) { if (cb.name + ":" + cb.value === key) { cb.checked = false; } });
    });
  }
  function apply() {
    var off = {};
    var hidden = [];
    boxes.forEach(function (cb) {
      if (!cb.checked) { off[cb.name + ":" + cb.value] = true; hidden.push(cb.name + ":" + cb.value); }
    });
    document.querySelectorAll("[data-status]").forEach(function (el) {
      var hide = off["status:" + el.dataset.status] || off["action:" + el.dataset.action];
      if (el.tagName === "LI") { el.classList.toggle("filtered", !!hide); } else { el.hidden = !!hide; }
    });
    return hidden;
  }
  boxes.forEach(function (cb) {
    cb.addEventListener("change", function () {
      var hidden = apply();
      try { history.replaceState(null, "", hidden.length ? "#hide=" + hidden.join(",") : "#"); } catch (e) { /* file: URLs may refuse */ }
    });
  });
  apply();
  document.body.dataset.ready = "1";
})();
