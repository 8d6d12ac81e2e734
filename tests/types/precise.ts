// The shapes the .d.ts knows, held to it under `strict`: the "message"
// event's message (the spec's RECONCILIATION_REQUEST / RESPONSE, told
// apart by `type`) and the JSON values the peer hands back (`get`,
// `state`, `entries`, `conflicts`, `presence`). They were `any`, and each
// mistake below compiled (a review); an unused `@ts-expect-error` is an
// error itself, so `tsc` fails if a type goes back to `any`.
import { Peer, type JsonValue } from "cpc-sync";

declare const peer: Peer;

peer.addEventListener("message", (e) => {
  // @ts-expect-error: no message has this type (a typo of RECONCILIATION_REQUEST)
  if (e.message.type === "RECONCILIATION_REQEUST") console.log("never");
  // @ts-expect-error: a request's events are `conflicting_events`
  console.log(e.message.events.length);
  // Told apart by `type`, each message's fields read without a cast.
  if (e.message.type === "RECONCILIATION_REQUEST") {
    const [first] = e.message.conflicting_events;
    console.log(e.message.key, first.id.peer, first.id.seq, first.hlc, first.deps);
    if ("register" in first.op && "write" in first.op.register) console.log(first.op.register.write.value);
  } else {
    console.log(e.message.resolution_events.length);
  }
});

// What comes back is JSON, never a function (nor a Date, a Map...).
// @ts-expect-error: a stored value is not callable
peer.get("k")();
// @ts-expect-error: a state's value is not callable
peer.state().k();
// @ts-expect-error: an entry's value is not callable
peer.entries()[0].value();
// @ts-expect-error: a candidate's value is not callable
peer.conflicts()[0].candidates[0].value();
// @ts-expect-error: a presence value is not callable
peer.presence()[0].value();

// Narrowed, it is what it is.
const likes = peer.get("likes");
if (typeof likes === "number") console.log(likes + 1);
const note: JsonValue | undefined = peer.state()["note/1"];
if (note && typeof note === "object" && !Array.isArray(note)) console.log(note.text);
