// Amounts of money as people type them ("45", "45.50", "45,50", "1 234,50"):
// the locale's decimal separator, or the other common one when it ends the
// amount with one or two digits. Unit-tested.

/** Cents, or `null` when the text is not an amount (negative, more than two decimals, letters). */
export function parseMoney(text: string, locale = "en-US"): number | null {
  const parts = new Intl.NumberFormat(locale).formatToParts(12345.5);
  const decimal = parts.find((p) => p.type === "decimal")?.value ?? ".";
  const t = text.trim().replace(/[\s\u00a0\u202f']/g, "");
  if (t === "") return null;
  const other = decimal === "." ? "," : ".";
  let whole = t;
  let fraction = "";
  const at = t.lastIndexOf(decimal);
  if (at >= 0) {
    whole = t.slice(0, at);
    fraction = t.slice(at + 1);
    if (!/^\d{1,2}$/.test(fraction)) return null;
    whole = whole.split(other).join("");
  } else {
    const tail = new RegExp(`\\${other}(\\d{1,2})$`).exec(t);
    if (tail) {
      fraction = tail[1];
      whole = t.slice(0, tail.index);
    }
    // What is left may group thousands with the other separator ("1,234").
    if (!/^\d{1,3}(\d{3})*$/.test(whole.split(other).join("")) && whole !== "") return null;
    whole = whole.split(other).join("");
  }
  if (whole !== "" && !/^\d+$/.test(whole)) return null;
  if (whole === "" && fraction === "") return null;
  const cents = Number(whole || "0") * 100 + Number(fraction.padEnd(2, "0") || "0");
  return Number.isSafeInteger(cents) ? cents : null;
}
