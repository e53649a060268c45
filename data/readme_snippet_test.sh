#!/usr/bin/env bash
# Runs the README's "Looking inside a shard" snippet verbatim on the demo dataset and checks that it
# prints example 7 of the first valid shard — line 8 of raw/valid.{en,de}, since shards keep file
# order. Usage: readme_snippet_test.sh PREPARE_CLI MARKDOWN_FILE
set -euo pipefail
cli=$1
markdown=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
mkdir build
printf '#!/usr/bin/env bash\nexec %q "$@"\n' "$cli" > build/tfm
chmod +x build/tfm
./build/tfm prepare --demo --out data/demo --quiet
# The first ```bash block that calls spm_decode.
awk '/^```bash$/ { inside = 1; block = ""; next }
     /^```$/     { if (inside && block ~ /spm_decode/) { printf "%s", block; found = 1; exit } inside = 0; next }
     inside      { block = block $0 "\n" }
     END         { if (!found) exit 1 }' "$markdown" > snippet.sh
bash snippet.sh > decoded.txt
printf '%s\n%s\n' "$(sed -n 8p data/demo/raw/valid.en)" "$(sed -n 8p data/demo/raw/valid.de)" > expected.txt
if ! diff expected.txt decoded.txt; then
  echo "README snippet printed something else (above: expected < > printed)" >&2
  exit 1
fi
echo "README snippet OK: $(tr '\n' '|' < decoded.txt)"
