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
  const [amount, setAmount] = useState(1);
  const [error, setError] = useState<string | null>(null);
  const low = item.quantity <= item.reorder_level;
  async function adjust(delta: number) {
    setError(null);
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
        <input type="number" min={1} value={amount} onChange={(e) => setAmount(Math.max(1, Number(e.target.value)))} className="narrow" />
        <button onClick={() => adjust(-amount)} data-testid="stock-take">−</button>
        <button onClick={() => adjust(amount)} data-testid="stock-add">+</button>
        {error && <span className="error">{error}</span>}
      </td>
    </tr>
  );
}
