"""Fixed dashboard uids: links between dashboards and `gpulens dashboards import` rely on them."""

FLEET = "gpulens-gpu-fleet"
NODE = "gpulens-gpu-node"
INFERENCE = "gpulens-inference"
PROBE = "gpulens-probe-slo"
