// How a form sends a change: every problem the rules see is checked first,
// in one round (the same planner the engine runs, without queuing), then the
// change is made and the form waits briefly for the server's answer. A
// refusal that comes back while the form is open is shown in it, with the
// user's input kept; after the wait the form closes and a later refusal
// becomes a notification.
import type { QueryClient } from "@tanstack/react-query";
import { api } from "../api";
import type { Mutation } from "../bindings/Mutation";
import type { Rejection } from "../bindings/Rejection";
import { awaitOutcome } from "./outcome";

/** How long an open form waits for the server's answer before it trusts the queue (six seconds: a busy server on a small machine still answers two desks booking at once within it). */
export const ANSWER_WAIT_MS = 6000;

export type Sent =
  | { state: "refused"; rejection: Rejection; mutationId: number | null }
  | { state: "confirmed"; mutationId: number; rows: [string, string][] }
  | { state: "queued"; mutationId: number; rows: [string, string][] };

/**
 * Checks, makes and follows one change. `claim` marks the change as shown by
 * the form while it waits (so no second notification appears for it).
 */
export async function send(m: Mutation, claim: (id: number, on: boolean) => void): Promise<Sent> {
  const local = await api.checkMutation(m);
  if (local) return { state: "refused", rejection: local, mutationId: null };
  const receipt = await api.mutate(m);
  const id = receipt.mutation_id;
  claim(id, true);
  const outcome = await awaitOutcome(id, ANSWER_WAIT_MS);
  const rows = receipt.rows as [string, string][];
  switch (outcome.state) {
    case "rejected":
      return { state: "refused", rejection: outcome.rejection, mutationId: id };
    case "confirmed":
      claim(id, false);
      return { state: "confirmed", mutationId: id, rows };
    case "queued":
      claim(id, false);
      return { state: "queued", mutationId: id, rows };
  }
}

/** A refusal the form has shown and the user has moved past (closed, changed, re-sent). */
export async function release(sent: Sent | null, claim: (id: number, on: boolean) => void, client: QueryClient): Promise<void> {
  if (sent?.state === "refused" && sent.mutationId !== null) {
    await api.dismissRejected(sent.mutationId);
    await client.invalidateQueries({ queryKey: ["rejected"] });
    claim(sent.mutationId, false);
  }
}
