"use strict";
// A report's values as text, whatever their type: a field of the wrong type, or a non-finite number
// (which the page's JSON carries as the string "NaN", "Infinity" or "-Infinity"), shows as it is
// instead of stopping the script. Pages put these into the DOM with textContent only.
const isNumber = (x) => typeof x === "number" && Number.isFinite(x);
const text = (x) => (typeof x === "string" ? x : x === undefined ? "" : JSON.stringify(x));
const fixed = (x, digits) => (isNumber(x) ? x.toFixed(digits) : text(x));
const precision = (x, digits) => (isNumber(x) ? x.toPrecision(digits) : text(x));
const percent = (x) => (isNumber(x) ? (100 * x).toFixed(1) + "%" : text(x));
const list = (x) => (Array.isArray(x) ? x : []);
const record = (x) => (x !== null && typeof x === "object" && !Array.isArray(x) ? x : {});
