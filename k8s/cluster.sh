#!/usr/bin/env bash
# Create (or complete) the GKE cluster finsent runs on: a CPU system pool, an autoscaled GPU node pool
# with GKE-installed drivers (and a tainted bulk pool with --bulk-max-nodes N), all running as a
# least-privilege node service account, Managed Prometheus, the custom-metrics adapter the HPA reads
# Triton's queue time through, an Artifact Registry repository, a model bucket and the Workload
# Identity bindings. Idempotent: what exists is left alone. --dry-run prints the commands instead.
#   k8s/cluster.sh --project my-project [--dry-run] [--gpu-type nvidia-l4 --gpu-count 1 ...]
set -euo pipefail

PROJECT="${PROJECT:-}"
REGION="${REGION:-us-central1}"
ZONE="${ZONE:-us-central1-a}"              # a zone that has the GPU type
CLUSTER="${CLUSTER:-finsent}"
NAMESPACE="${NAMESPACE:-finsent}"
KSA="${KSA:-finsent-triton}"               # the chart's serviceAccount.name in the gcs profile
GSA_NAME="${GSA_NAME:-finsent-triton}"
NODE_SA_NAME="${NODE_SA_NAME:-finsent-nodes}"     # the nodes' account: pulls images, writes logs and metrics
REGISTRY="${REGISTRY:-finsent}"
BUCKET="${BUCKET:-}"                        # default: PROJECT-finsent-models
GPU_TYPE="${GPU_TYPE:-nvidia-l4}"
GPU_COUNT="${GPU_COUNT:-1}"
GPU_MACHINE="${GPU_MACHINE:-}"              # default: one that carries GPU_TYPE (g2 for L4, n1 for T4)
GPU_MIN_NODES="${GPU_MIN_NODES:-0}"
# Pool sizes: a rollout at the HPA's maxReplicas needs maxSurge (1) more Triton pods than that
# (tests/k8s/test_capacity.py checks every values profile against these; docs/gke.md, "Capacity").
GPU_MAX_NODES="${GPU_MAX_NODES:-5}"         # the chart's maxReplicas 4 + surge 1
SYSTEM_MACHINE="${SYSTEM_MACHINE:-e2-standard-4}"
SYSTEM_MAX_NODES="${SYSTEM_MAX_NODES:-10}"  # the cpu profile's maxReplicas 8 + surge 1 + 1 for the system pods
BULK_MAX_NODES="${BULK_MAX_NODES:-0}"       # 0: no bulk pool; k8s/values/bulk.yaml needs 9 (maxReplicas 8 + surge 1)
RELEASE_CHANNEL="${RELEASE_CHANNEL:-regular}"
# A release of GoogleCloudPlatform/k8s-stackdriver, not its moving master branch.
ADAPTER_VERSION="${ADAPTER_VERSION:-cm-sd-adapter-v0.16.9}"
IAM_ATTEMPTS="${IAM_ATTEMPTS:-6}"           # tries of an IAM binding while a new service account propagates
IAM_BACKOFF="${IAM_BACKOFF:-5}"             # seconds before the second try, doubled after each (5..80: 2.5 min)
DRY_RUN=0

OPTIONS=" $(sed -nE 's/^([A-Z_]+)="\$\{.*/\1/p' "$0" | tr '\n' ' ')"   # every VAR="${VAR:-default}" above
usage() { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; grep -E '^[A-Z_]+="\$\{' "$0" | sed -E 's/^([A-Z_]+)=.*:-([^}]*)\}".*/  --\1 (default: \2)/' | tr 'A-Z_' 'a-z-' ; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --*=*) key="${1%%=*}"; set -- "$key" "${1#*=}" "${@:2}" ;;
    --*)
      [[ $# -ge 2 ]] || { echo "error: $1 needs a value" >&2; exit 2; }
      var=$(echo "${1#--}" | tr 'a-z-' 'A-Z_')
      case "$OPTIONS" in
        *" $var "*) printf -v "$var" '%s' "$2"; shift 2 ;;
        *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
      esac ;;
    *) echo "error: unexpected argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

[[ -n "$PROJECT" ]] || { echo "error: --project (or PROJECT=) is required" >&2; exit 2; }
for var in GPU_COUNT GPU_MIN_NODES GPU_MAX_NODES SYSTEM_MAX_NODES BULK_MAX_NODES IAM_ATTEMPTS IAM_BACKOFF; do
  [[ ${!var} =~ ^[0-9]+$ ]] || { echo "error: --$(echo "$var" | tr 'A-Z_' 'a-z-') wants a whole number, not '${!var}'" >&2; exit 2; }
done
# The GPU types the image runs on, and why the others cannot: the chart's list (it refuses the same).
GPUS="${0%/*}/chart/finsent/files/accelerators.yaml"
SUPPORTED=$(sed -n '/^supported:/,/^[a-z]/s/^  - \([a-z0-9-]*\).*/\1/p' "$GPUS" | tr '\n' ' ')
if [[ " $SUPPORTED" != *" $GPU_TYPE "* ]]; then
  why=$(sed -n "/^unsupported:/,\$s/^  $GPU_TYPE: //p" "$GPUS")
  echo "error: --gpu-type $GPU_TYPE is not supported: ${why:-not a GPU type the image is known to run on}; supported: ${SUPPORTED% } ($GPUS)" >&2
  exit 2
fi
[[ -n "$BUCKET" ]] || BUCKET="$PROJECT-finsent-models"
GSA="$GSA_NAME@$PROJECT.iam.gserviceaccount.com"
NODE_SA="$NODE_SA_NAME@$PROJECT.iam.gserviceaccount.com"
if [[ -z "$GPU_MACHINE" ]]; then
  case "$GPU_TYPE" in
    nvidia-l4) case "$GPU_COUNT" in 1) GPU_MACHINE=g2-standard-8 ;; 2) GPU_MACHINE=g2-standard-24 ;;
                 4) GPU_MACHINE=g2-standard-48 ;; *) GPU_MACHINE=g2-standard-96 ;; esac ;;
    nvidia-tesla-a100) GPU_MACHINE="a2-highgpu-${GPU_COUNT}g" ;;
    nvidia-a100-80gb) GPU_MACHINE="a2-ultragpu-${GPU_COUNT}g" ;;
    nvidia-h100-80gb) GPU_MACHINE="a3-highgpu-${GPU_COUNT}g" ;;
    nvidia-h100-mega-80gb) GPU_MACHINE="a3-megagpu-8g" ;;   # these two come with 8 GPUs: --gpu-count 8
    nvidia-h200-141gb) GPU_MACHINE="a3-ultragpu-8g" ;;
    *) GPU_MACHINE="n1-standard-8" ;;      # T4, V100, P4, P100: attached to N1 machines
  esac
fi

if [[ $DRY_RUN -eq 0 ]] && ! command -v gcloud >/dev/null; then
  echo "error: gcloud is not installed (https://cloud.google.com/sdk/docs/install); --dry-run shows the commands" >&2
  exit 1
fi

run() {   # run (or print) one command
  if [[ $DRY_RUN -eq 1 ]]; then printf '%q ' "$@" | sed 's/ $//'; echo; else "$@"; fi
}
ensure() {   # ensure "what" <command that succeeds when it exists> -- <command that creates it>
  local what="$1"; shift
  local check=() ; while [[ "$1" != "--" ]]; do check+=("$1"); shift; done; shift
  if [[ $DRY_RUN -eq 1 ]]; then
    echo "# $what, unless: $(printf '%q ' "${check[@]}" | sed 's/ $//')"; run "$@"
  elif "${check[@]}" >/dev/null 2>&1; then
    echo "exists: $what"
  else
    echo "creating: $what"; "$@"
  fi
}

grant() {   # grant "what" <an add-iam-policy-binding command>: idempotent, retried while IAM propagates
  local what="$1"; shift
  if [[ $DRY_RUN -eq 1 ]]; then run "$@"; return; fi
  local attempt=1 delay="$IAM_BACKOFF"
  # A service account created seconds ago can be unknown to IAM for a minute or two ("does not exist").
  until "$@" >/dev/null; do
    if (( attempt >= IAM_ATTEMPTS )); then
      echo "error: gave up after $IAM_ATTEMPTS attempts to grant $what; if the account is new, IAM may still be propagating: rerun k8s/cluster.sh (it keeps what exists)" >&2
      exit 1
    fi
    echo "waiting for $what (IAM propagation): attempt $attempt of $IAM_ATTEMPTS failed, next in ${delay}s" >&2
    sleep "$delay"; attempt=$((attempt + 1)); delay=$((delay * 2))
  done
  echo "granted: $what"
}

G=(gcloud --project "$PROJECT")
run "${G[@]}" services enable container.googleapis.com artifactregistry.googleapis.com \
  cloudbuild.googleapis.com monitoring.googleapis.com storage.googleapis.com iam.googleapis.com

ensure "Artifact Registry repository $REGISTRY" \
  "${G[@]}" artifacts repositories describe "$REGISTRY" --location "$REGION" -- \
  "${G[@]}" artifacts repositories create "$REGISTRY" --location "$REGION" --repository-format docker

# The nodes' own account. Without one they run as the Compute Engine default account, which new
# organisations' policy leaves without Editor: no Artifact Registry read, pods in ImagePullBackOff.
# Least privilege: read this repository's images, write logs and metrics, read metrics (GKE's list).
ensure "node service account $NODE_SA" \
  "${G[@]}" iam service-accounts describe "$NODE_SA" -- \
  "${G[@]}" iam service-accounts create "$NODE_SA_NAME" --display-name "finsent GKE nodes (least privilege)"
for role in roles/logging.logWriter roles/monitoring.metricWriter roles/monitoring.viewer; do
  grant "$role to $NODE_SA" \
    "${G[@]}" projects add-iam-policy-binding "$PROJECT" --condition None --member "serviceAccount:$NODE_SA" --role "$role"
done
grant "roles/artifactregistry.reader on repository $REGISTRY to $NODE_SA" \
  "${G[@]}" artifacts repositories add-iam-policy-binding "$REGISTRY" --location "$REGION" \
    --member "serviceAccount:$NODE_SA" --role roles/artifactregistry.reader

# Every pool below runs as NODE_SA. A pool that exists keeps the account it was created with (GKE
# cannot change it in place): docs/gke.md says how to move an older cluster over.
ensure "cluster $CLUSTER" \
  "${G[@]}" container clusters describe "$CLUSTER" --location "$ZONE" -- \
  "${G[@]}" container clusters create "$CLUSTER" --location "$ZONE" \
    --release-channel "$RELEASE_CHANNEL" --workload-pool "$PROJECT.svc.id.goog" \
    --enable-managed-prometheus --machine-type "$SYSTEM_MACHINE" --num-nodes 1 \
    --enable-autoscaling --min-nodes 1 --max-nodes "$SYSTEM_MAX_NODES" --service-account "$NODE_SA"

# latest, not default: a GKE version's default driver may be older than the R560 that CUDA 12.6
# (NGC tritonserver 24.10) wants.
ensure "GPU node pool gpu ($GPU_COUNT x $GPU_TYPE on $GPU_MACHINE)" \
  "${G[@]}" container node-pools describe gpu --cluster "$CLUSTER" --location "$ZONE" -- \
  "${G[@]}" container node-pools create gpu --cluster "$CLUSTER" --location "$ZONE" \
    --machine-type "$GPU_MACHINE" \
    --accelerator "type=$GPU_TYPE,count=$GPU_COUNT,gpu-driver-version=latest" \
    --enable-autoscaling --num-nodes "$GPU_MIN_NODES" --min-nodes "$GPU_MIN_NODES" --max-nodes "$GPU_MAX_NODES" \
    --workload-metadata GKE_METADATA --service-account "$NODE_SA"

# k8s/values/bulk.yaml's pool (docs/gke.md, "Bulk scoring"): the same GPUs, tainted so that only
# the bulk release lands there, scaled to 0 when idle.
if (( BULK_MAX_NODES > 0 )); then
  ensure "bulk GPU node pool bulk ($GPU_COUNT x $GPU_TYPE on $GPU_MACHINE)" \
    "${G[@]}" container node-pools describe bulk --cluster "$CLUSTER" --location "$ZONE" -- \
    "${G[@]}" container node-pools create bulk --cluster "$CLUSTER" --location "$ZONE" \
      --machine-type "$GPU_MACHINE" \
      --accelerator "type=$GPU_TYPE,count=$GPU_COUNT,gpu-driver-version=latest" \
      --node-taints finsent-bulk=true:NoSchedule \
      --enable-autoscaling --num-nodes 0 --min-nodes 0 --max-nodes "$BULK_MAX_NODES" \
      --workload-metadata GKE_METADATA --service-account "$NODE_SA"
fi

ensure "bucket gs://$BUCKET" \
  "${G[@]}" storage buckets describe "gs://$BUCKET" -- \
  "${G[@]}" storage buckets create "gs://$BUCKET" --location "$REGION" --uniform-bucket-level-access

ensure "service account $GSA" \
  "${G[@]}" iam service-accounts describe "$GSA" -- \
  "${G[@]}" iam service-accounts create "$GSA_NAME" --display-name "finsent Triton (reads the model bucket)"

# Bindings are idempotent by nature: adding one that exists changes nothing.
# objectViewer reads the objects; legacyBucketReader adds storage.buckets.get, the bucket metadata
# Triton's GCS filesystem reads before listing a folder (triton-inference-server/server issue 2253).
for role in roles/storage.objectViewer roles/storage.legacyBucketReader; do
  grant "$role on gs://$BUCKET to $GSA" \
    "${G[@]}" storage buckets add-iam-policy-binding "gs://$BUCKET" --member "serviceAccount:$GSA" --role "$role"
done
grant "Workload Identity: $NAMESPACE/$KSA acts as $GSA" \
  "${G[@]}" iam service-accounts add-iam-policy-binding "$GSA" \
    --member "serviceAccount:$PROJECT.svc.id.goog[$NAMESPACE/$KSA]" --role roles/iam.workloadIdentityUser
# The custom-metrics adapter reads Managed Prometheus data as its own Kubernetes service account.
grant "roles/monitoring.viewer to the custom-metrics adapter" \
  "${G[@]}" projects add-iam-policy-binding "$PROJECT" --condition None \
    --member "serviceAccount:$PROJECT.svc.id.goog[custom-metrics/custom-metrics-stackdriver-adapter]" \
    --role roles/monitoring.viewer

run "${G[@]}" container clusters get-credentials "$CLUSTER" --location "$ZONE"
run kubectl apply -f "https://raw.githubusercontent.com/GoogleCloudPlatform/k8s-stackdriver/$ADAPTER_VERSION/custom-metrics-stackdriver-adapter/deploy/production/adapter_new_resource_model.yaml"
ensure "namespace $NAMESPACE" kubectl get namespace "$NAMESPACE" -- kubectl create namespace "$NAMESPACE"

echo "# next: make repository TARGET=container DEVICE=gpu && gcloud builds submit --config k8s/cloudbuild.yaml ."
# The chart's node selector must name the pool's GPU, or the pods stay Pending.
echo "#       helm install finsent k8s/chart/finsent -n $NAMESPACE --set image.repository=$REGION-docker.pkg.dev/$PROJECT/$REGISTRY/triton --set gpu.accelerator=$GPU_TYPE"
