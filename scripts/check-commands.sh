#!/usr/bin/env bash
# The desk's commands are named in three places that must agree: the
# handler list (src-tauri/src/commands/mod.rs), the permissions build.rs
# generates, and the capability that grants them to the window. A command
# missing from either of the last two exists but is refused at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
handler=$(sed -n '/generate_handler!\[/,/\]/p' src-tauri/src/commands/mod.rs | grep -E '^\s+[a-z_]+,?\s*$' | tr -d ' ,' | sort)
built=$(sed -n '/let commands = &\[/,/\];/p' src-tauri/build.rs | grep -oE '"[a-z_]+"' | tr -d '"' | sort)
granted=$(grep -oE '"allow-[a-z-]+"' src-tauri/capabilities/default.json | sed 's/"allow-//; s/"$//; s/-/_/g' | sort)
status=0
if [ "$handler" != "$built" ]; then
  echo "error: src-tauri/build.rs and the handler list differ:" >&2
  diff <(echo "$handler") <(echo "$built") >&2 || true
  status=1
fi
if [ "$handler" != "$granted" ]; then
  echo "error: src-tauri/capabilities/default.json and the handler list differ:" >&2
  diff <(echo "$handler") <(echo "$granted") >&2 || true
  status=1
fi
[ "$status" -eq 0 ] && echo "desk commands: $(echo "$handler" | wc -l) in the handler, build.rs and the capability"
exit "$status"
