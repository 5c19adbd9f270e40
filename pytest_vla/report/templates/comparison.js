"use strict";
// Draws a paired comparison (report.json's "comparison", or pytest-vla compare --json) into `container`.
function renderComparison(container, data) {
  const comparison = record(data);
  const pp = (x) => (isNumber(x) ? (x >= 0 ? "+" : "") + (100 * x).toFixed(1) : text(x));
  const verdict = document.createElement("p");
  verdict.className = "verdict verdict-" + text(comparison.verdict);
  verdict.textContent = `${text(comparison.verdict)} (margin ${text(comparison.margin_pp)} pp): ` +
    `NEW ${text(comparison.new)} vs BASE ${text(comparison.base)}`;
  const table = document.createElement("table");
  table.className = "comparison";
  const head = ["", "pairs", "BASE", "NEW", "difference (pp)", "95% interval", "only BASE", "only NEW", "p", "p (Holm)", "verdict"];
  const tr = document.createElement("tr");
  for (const h of head) { const th = document.createElement("th"); th.textContent = h; tr.append(th); }
  const thead = document.createElement("thead"); thead.append(tr); table.append(thead);
  const tbody = document.createElement("tbody");
  for (const r of list(comparison.rows).map(record)) {
    const row = document.createElement("tr");
    row.dataset.scope = text(r.scope);
    const ci = Array.isArray(r.ci95) ? `[${pp(r.ci95[0])}, ${pp(r.ci95[1])}]` : r.ci95 ? text(r.ci95) : "";
    const values = [r.label, r.n_pairs, `${text(r.base_successes)}/${text(r.n_pairs)}`, `${text(r.new_successes)}/${text(r.n_pairs)}`,
      pp(r.difference), ci, r.only_base, r.only_new, precision(r.p_value, 3), precision(r.p_adjusted, 3), r.verdict];
    for (const v of values) { const td = document.createElement("td"); td.textContent = text(v); row.append(td); }
    row.lastChild.className = "verdict-" + text(r.verdict);
    tbody.append(row);
  }
  table.append(tbody);
  const note = document.createElement("p");
  note.className = "muted";
  note.textContent = `${text(comparison.test)}; ${text(comparison.interval)}; ${text(comparison.adjustment)}. ` +
    `Left out: ${text(comparison.excluded_pairs)} pairs with a harness error, ${text(comparison.unpaired_episodes)} episodes without a partner.`;
  container.append(verdict, table, note);
}
