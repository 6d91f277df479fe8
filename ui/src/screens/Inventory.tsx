import { useQuery } from "@tanstack/react-query";
import { useState } from "react";
import { api, errorMessage } from "../api";
import type { InventoryItem } from "../bindings/InventoryItem";
import type { Entity } from "../bindings/Entity";
import { useLive } from "../events";

export function Inventory() {
  const [lowOnly, setLowOnly] = useState(false);
  const items = useQuery({
    queryKey: lowOnly ? ["lowStock"] : ["rows", "inventory_items"],
    queryFn: () => (lowOnly ? api.lowStock() : api.inventory()),
  });
  const rows = [...(items.data ?? [])].sort((a, b) => a.data.name.localeCompare(b.data.name));
  return (
    <div>
      <div className="toolbar">
        <label className="check"><input type="checkbox" checked={lowOnly} onChange={(e) => setLowOnly(e.target.checked)} /> Only low stock</label>
      </div>
      <table data-testid="inventory">
        <thead><tr><th>Item</th><th>In stock</th><th>Reorder at</th><th>Adjust</th></tr></thead>
        <tbody>{rows.map((r) => <ItemRow key={r.id} row={r} />)}</tbody>
      </table>
    </div>
  );
}

function ItemRow({ row }: { row: Entity<InventoryItem> }) {
  const item = row.data;
  const { recent } = useLive();
  const [amount, setAmount] = useState("1");
  const [error, setError] = useState<string | null>(null);
  const low = item.quantity <= item.reorder_level;
  async function adjust(sign: number) {
    setError(null);
    const n = Number(amount.trim());
    if (!Number.isInteger(n) || n < 1 || n > 1_000_000) return setError("Amount must be a whole number between 1 and 1,000,000.");
    const delta = sign * n;
    try {
      await api.mutate({ type: "adjust_stock", args: { id: row.id, delta, reason: null } });
    } catch (err) {
      setError(errorMessage(err));
    }
  }
  return (
    <tr className={[recent.has(row.id) ? "flash" : "", low ? "low" : ""].join(" ")} data-testid="stock-row" data-id={row.id}>
      <td>{item.name}{low && <span className="badge warn">low</span>}</td>
      <td data-testid="stock-quantity">{item.quantity} {item.unit}{row.pending && <span className="badge">saving</span>}</td>
      <td>{item.reorder_level}</td>
      <td className="actions">
        <input inputMode="numeric" aria-label={`Amount of ${item.name}`} value={amount} onChange={(e) => setAmount(e.target.value)} className="narrow" />
        <button onClick={() => adjust(-1)} data-testid="stock-take" aria-label={`Take from stock of ${item.name}`}>−</button>
        <button onClick={() => adjust(1)} data-testid="stock-add" aria-label={`Add to stock of ${item.name}`}>+</button>
        {error && <span className="error">{error}</span>}
      </td>
    </tr>
  );
}
