// Package credentials is the PullImage credentials feature: it finds
// node-level registry credentials for an image, the way the kubelet does, and
// injects them into PullImage calls that carry none (image_pull.go, Injector),
// for the namespaces images.credentials.policy allows (config.go), before pull
// scheduling (package pulls) sees the call.
//
// Two sources exist, asked in the kubelet's order (Chain):
//
//   - DockerConfig: the docker config.json / legacy .dockercfg keyring the
//     kubelet reads from its root directory, its working directory, $HOME and
//     / (kubernetes pkg/credentialprovider/config.go). crishim re-reads the
//     file when it changes; the kubelet only every five minutes
//     (pkg/credentialprovider/provider.go).
//   - Plugins: kubelet credential-provider exec plugins, configured with the
//     kubelet's own CredentialProviderConfig file and protocol
//     (pkg/credentialprovider/plugin/plugin.go, config.go).
//
// Both hand their credentials to the same keyring rules
// (pkg/credentialprovider/keyring.go): a key such as "*.registry.example" or
// "https://registry.example:5000/v2/" matches an image by host labels
// (filepath.Match per label), equal port and path prefix; every matching key
// contributes, most specific first. The image is first normalized the way the
// kubelet does before its keyring lookup (pkg/util/parsers: docker's
// reference grammar, tag and digest dropped, "busybox" is
// "docker.io/library/busybox"), and hosts are compared by their canonical
// identity (package registry), as the policy compares them.
//
// Secrets never leave this package in text: Credential's String, GoString,
// Format and MarshalJSON omit the password, logs never carry a password, a
// plugin's stdout or a config file's content, and errors name files, keys and
// providers only.
package credentials
