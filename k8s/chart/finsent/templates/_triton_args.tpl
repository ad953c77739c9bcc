{{/* Generated from server.triton.triton_args() by `make manifests`: do not edit. */}}
{{- define "finsent.tritonArgs" -}}
- {{ printf "%s%s%s" "--model-repository=" (include "finsent.modelRepository" .) "" | quote }}
- "--http-port=8000"
- "--grpc-port=8001"
- "--metrics-port=8002"
- "--allow-metrics=true"
- "--allow-gpu-metrics=true"
- "--allow-cpu-metrics=true"
- "--model-control-mode=explicit"
- "--load-model=*"
- "--strict-readiness=true"
- "--exit-timeout-secs=30"
- "--log-verbose=0"
- "--http-restricted-api=model-repository,shared-memory,statistics,trace,logging:finsent-admin=$(TRITON_ADMIN_KEY)"
- "--grpc-restricted-protocol=model-repository,shared-memory,statistics,trace,logging:finsent-admin=$(TRITON_ADMIN_KEY)"
{{- end }}
{{- define "finsent.port.http" }}8000{{- end }}
{{- define "finsent.port.grpc" }}8001{{- end }}
{{- define "finsent.port.metrics" }}8002{{- end }}
