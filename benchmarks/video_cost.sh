#!/usr/bin/env bash
# What --vla-video costs: the same episodes with and without it (-p no:xdist, one process), on real LIBERO.
# Prints per run: wall time, steps, episode time and milliseconds per policy step, the largest video.
# It writes into /tmp/rb. CAMERA_EXPORT: an export that binds agentview, e.g. tests.models.camera_export(path, size=224).
PYTEST_VLA_VENV=${PYTEST_VLA_VENV:-$(cd "$(dirname "$0")/.." && pwd)/.venv}
mkdir -p /tmp/rb && cd /tmp/rb
run() { # name export extra...
  name=$1; export=$2; shift 2
  s=$(date +%s.%N)
  "$PYTEST_VLA_VENV"/bin/pytest -q -p no:cacheprovider -p no:xdist --vla-export $export --vla-output vb_$name "$@" >/dev/null 2>&1
  e=$(date +%s.%N)
  "$PYTEST_VLA_VENV"/bin/python -c "
import json,os; r=json.load(open('vb_$name/report.json')); eps=r['episodes']
steps=sum(x['n_steps'] for x in eps); ep=sum(x['wall_clock_s'] for x in eps)
sizes=[os.path.getsize(p) for p in r['video_paths']]
print('$name', 'total_s', round($e-$s,1), 'episodes', len(eps), 'steps', steps, 'episode_s', round(ep,1), 'ms/step', round(1000*ep/steps,1), 'video MB max', round(max(sizes)/2**20,2) if sizes else None)"
}
run demo_plain demo --vla-tasks libero_object:0,libero_object:1 --vla-num-episodes 2
run demo_video demo --vla-tasks libero_object:0,libero_object:1 --vla-num-episodes 2 --vla-video all
run cam_plain "${CAMERA_EXPORT:?an export that binds agentview}" --vla-tasks libero_object:0 --vla-num-episodes 2 --vla-max-steps 60
run cam_video "${CAMERA_EXPORT:?an export that binds agentview}" --vla-tasks libero_object:0 --vla-num-episodes 2 --vla-max-steps 60 --vla-video all
run long_video demo --vla-tasks libero_10:0 --vla-num-episodes 1 --vla-max-steps 520 --vla-video all
