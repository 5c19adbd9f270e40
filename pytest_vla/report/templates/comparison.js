"use strict";
// Draws a paired comparison (report.json's "comparison", or pytest-vla compare --json) into `container`.
function renderComparison(container, comparison) {
  const pp = (x) => (x >= 0 ? "+" : "") + (100 * x).toFixed(1);
  const verdict = document.createElement("p");
  verdict.className = "verdict verdict-" + comparison.verdict;
  verdict.textContent = `${comparison.verdict} (margin ${comparison.margin_pp} pp): NEW ${comparison.new} vs BASE ${comparison.base}`;
  const table = document.createElement("table");
  table.className = "comparison";
  const head = ["", "pairs", "BASE", "NEW", "difference (pp)", "95% interval", "only BASE", "only NEW", "p", "p (Holm)", "verdict"];
  const tr = document.createElement("tr");
  for (const h of head) { const th = document.createElement("th"); th.textContent = h; tr.append(th); }
  const thead = document.createElement("thead"); thead.append(tr); table.append(thead);
  const tbody = document.createElement("tbody");
  for (const r of comparison.rows) {
    const row = document.createElement("tr");
    row.dataset.scope = r.scope;
    const values = [r.label, r.n_pairs, `${r.base_successes}/${r.n_pairs}`, `${r.new_successes}/${r.n_pairs}`, pp(r.difference),
      r.ci95 ? `[${pp(r.ci95[0])}, ${pp(r.ci95[1])}]` : "", r.only_base, r.only_new, r.p_value.toPrecision(3), r.p_adjusted.toPrecision(3), r.verdict];
    for (const v of values) { const td = document.createElement("td"); td.textContent = v; row.append(td); }
    row.lastChild.className = "verdict-" + r.verdict;
    tbody.append(row);
  }
  table.append(tbody);
  const note = document.createElement("p");
  note.className = "muted";
  note.textContent = `${comparison.test}; ${comparison.interval}; ${comparison.adjustment}. ` +
    `Left out: ${comparison.excluded_pairs} pairs with a harness error, ${comparison.unpaired_episodes} episodes without a partner.`;
  container.append(verdict, table, note);
}
