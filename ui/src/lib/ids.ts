// Row ids, made in the UI process so a write needs no extra round trip to
// the shell: UUIDv7 (RFC 9562), a 48-bit millisecond timestamp then random
// bits, so ids sort by creation time like the ones the engine makes.

export function uuidv7(now: number = Date.now(), random: Uint8Array = crypto.getRandomValues(new Uint8Array(10))): string {
  const bytes = new Uint8Array(16);
  let ms = Math.floor(now);
  for (let i = 5; i >= 0; i--) {
    bytes[i] = ms % 256;
    ms = Math.floor(ms / 256);
  }
  bytes[6] = 0x70 | (random[0] & 0x0f); // version 7
  bytes[7] = random[1];
  bytes[8] = 0x80 | (random[2] & 0x3f); // RFC 9562 variant
  bytes.set(random.subarray(3, 10), 9);
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The millisecond timestamp a UUIDv7 carries. */
export function uuidv7Time(id: string): number {
  return parseInt(id.replace(/-/g, "").slice(0, 12), 16);
}
