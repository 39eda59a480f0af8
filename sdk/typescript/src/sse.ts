// The text/event-stream format, fed in chunks of any size: lines end in LF, CRLF or CR; a
// line starting with ":" is a comment; "data" lines join with LF; a blank line dispatches
// the event unless it has no data; an id stays until another replaces it.

export interface SseEvent {
  /** `message` when the event named none. */
  event: string;
  id: string | undefined;
  data: string;
}

export class SseParser {
  private line = "";
  private afterCr = false;
  private event = "";
  private data: string | undefined;
  private id: string | undefined;

  /** Feeds text; returns the events it completed. */
  push(text: string): SseEvent[] {
    const out: SseEvent[] = [];
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === 10 && this.afterCr) {
        this.afterCr = false;
        start = i + 1;
        continue;
      }
      if (c === 10 || c === 13) {
        this.line += text.slice(start, i);
        start = i + 1;
        this.afterCr = c === 13;
        const done = this.lineDone(this.line);
        this.line = "";
        if (done) out.push(done);
      } else {
        this.afterCr = false;
      }
    }
    this.line += text.slice(start);
    return out;
  }

  private lineDone(line: string): SseEvent | undefined {
    if (line === "") {
      const data = this.data;
      const event = this.event;
      this.data = undefined;
      this.event = "";
      if (data === undefined) return undefined;
      return { event: event === "" ? "message" : event, id: this.id, data };
    }
    if (line.startsWith(":")) return undefined;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.event = value;
    else if (field === "data") this.data = this.data === undefined ? value : `${this.data}\n${value}`;
    else if (field === "id" && !value.includes("\0")) this.id = value;
    return undefined;
  }
}
