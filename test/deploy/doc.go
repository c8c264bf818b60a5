// Package deploy checks the deployment assets against the code they deploy:
// every rendered Kubernetes object decodes strictly into its API type, the
// compose file loads against the Compose specification, the images build the
// way the Dockerfile says, and the environment variables that compose and
// every overlay set are exactly the ones the services read.
//
// The Kubernetes checks read the overlays rendered by scripts/k8s-validate.sh
// (LR_K8S_RENDERED=dir) or render them with kustomize v5.8.2 when it is
// installed. With neither, they fail: an unrendered overlay is not a valid one.
package deploy
