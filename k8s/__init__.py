"""GKE deployment: the Helm chart (k8s/chart/finsent), its rendered manifests and their generator."""
