/* Sortable tables of the modl catalog site (no dependencies, no network).
 *
 * Every table inside an element with class "modl-sortable" gets clickable column headers: a click
 * sorts the rows by that column, ascending; a second click on the same header sorts descending.
 * Cells are compared as numbers when both parse as numbers, otherwise as text (locale-aware,
 * case-insensitive, with numeric collation). Ties keep their previous order (stable sort).
 * The current order is exposed as aria-sort on the header, for assistive technology and tests.
 */
(function () {
  "use strict";

  function cellKey(row, index) {
    var cell = row.cells[index];
    if (!cell) return "";
    var explicit = cell.getAttribute("data-sort");
    return (explicit !== null ? explicit : cell.textContent).trim();
  }

  function compare(a, b) {
    var x = parseFloat(a), y = parseFloat(b);
    var numeric = /^-?\d+(\.\d+)?%?$/;
    if (numeric.test(a) && numeric.test(b)) return x - y;
    return a.localeCompare(b, undefined, { numeric: true, sensitivity: "base" });
  }

  function sortBy(table, index, direction) {
    var body = table.tBodies[0];
    if (!body) return;
    var rows = Array.prototype.slice.call(body.rows).map(function (row, position) {
      return { row: row, key: cellKey(row, index), position: position };
    });
    rows.sort(function (p, q) {
      var order = compare(p.key, q.key) * direction;
      return order !== 0 ? order : p.position - q.position;
    });
    rows.forEach(function (item) { body.appendChild(item.row); });
  }

  function enhance(table) {
    if (table.getAttribute("data-modl-sortable") === "1" || !table.tHead) return;
    table.setAttribute("data-modl-sortable", "1");
    var headers = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(headers, function (header, index) {
      header.classList.add("modl-sort-header");
      header.setAttribute("tabindex", "0");
      header.setAttribute("role", "columnheader");
      header.setAttribute("aria-sort", "none");
      header.title = "Sort by this column";
      function activate() {
        var ascending = header.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(headers, function (other) { other.setAttribute("aria-sort", "none"); });
        header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        sortBy(table, index, ascending ? 1 : -1);
      }
      header.addEventListener("click", activate);
      header.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); activate(); }
      });
    });
  }

  function enhanceAll() {
    var tables = document.querySelectorAll(".modl-sortable table");
    Array.prototype.forEach.call(tables, enhance);
  }

  // Material's instant navigation (if enabled) swaps pages without a load event: follow document$.
  if (typeof window.document$ !== "undefined" && window.document$.subscribe) {
    window.document$.subscribe(enhanceAll);
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", enhanceAll);
  } else {
    enhanceAll();
  }
})();
