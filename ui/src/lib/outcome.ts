// Waiting for the server's answer to one change, so a form can stay open
// until it knows: confirmed, refused (with why), or still queued when the
// wait ends (offline: the desk says it will tell if it is refused later).
import { api } from "../api";
import type { Delivery } from "../bindings/Delivery";
import { nextStoreEvent } from "../events";

/** The change's state once it is no longer queued, or when `timeoutMs` has passed. */
export async function awaitOutcome(mutationId: number, timeoutMs: number): Promise<Delivery> {
  const deadline = Date.now() + timeoutMs;
  let state = await api.mutationState(mutationId);
  while (state.state === "queued" && Date.now() < deadline) {
    // Woken by the store event that carries the answer; re-checked at least every 500 ms.
    await nextStoreEvent(Math.min(500, deadline - Date.now()));
    state = await api.mutationState(mutationId);
  }
  return state;
}
