#!/bin/sh
# Balance simulator (bench/balance.rs): five fake relays that enforce their
# limits, listeners that follow the redirect and stay, the real balancer with
# real polling. Usage: bench/balance.sh [flash|churn|death|all] [--poll 5|15]
#   [--refuse 403|503] [--source load|status-json] [--seed N]
# The simulation runs in real time (about 5 minutes per poll interval for
# all scenarios); the dev profile is enough, the balancer is not the
# bottleneck here.
set -eu
cd "$(dirname "$0")/.."
exec cargo bench --profile dev --bench balance -- "$@"
