// Server-Sent Events read with fetch() instead of EventSource: EventSource cannot send the X-API-Key
// header. This reads the subset of the text/event-stream format the orchestrator sends (the HTML
// standard's rules for it): lines end in CRLF, LF or CR (sse-starlette sends CRLF); `event:` names the
// event, `data:` lines are joined with LF, a blank line dispatches, `:` lines are comments (keep-alive
// pings); `id:` and `retry:` are ignored (no automatic reconnection here: the caller decides).

/**
 * Feed text chunks in, get whole events out. Exported apart from the network so it can be tested.
 */
export class EventParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.event = "";
    this.data = [];
  }

  push(text) {
    this.buffer += text;
    for (;;) {
      const end = /\r\n|\r|\n/.exec(this.buffer);
      if (end === null) return;
      // A CR at the very end may be the first half of a CRLF split between two chunks: wait for more.
      if (end[0] === "\r" && end.index === this.buffer.length - 1) return;
      const line = this.buffer.slice(0, end.index);
      this.buffer = this.buffer.slice(end.index + end[0].length);
      this.line(line);
    }
  }

  line(line) {
    if (line === "") {
      if (this.data.length > 0) this.onEvent({ event: this.event || "message", data: this.data.join("\n") });
      this.event = "";
      this.data = [];
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.event = value;
    else if (field === "data") this.data.push(value);
  }
}

/**
 * Read an event-stream response to its end, calling `onEvent({event, data})` for each event. Resolves
 * when the server closes the stream; rejects when the connection fails or `signal` aborts the fetch.
 */
export async function readEvents(response, onEvent) {
  const parser = new EventParser(onEvent);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return; // an event not ended by a blank line is dropped, as the standard says
    parser.push(value);
  }
}
