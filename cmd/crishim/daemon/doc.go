// Package daemon is crishim's daemon, everything but the command line: the
// configuration file (Config, LoadConfig, Validate), the node it wires from
// it (the features each intercepted RPC goes through, in their fixed order),
// and the lifecycle Run drives: listening, socket activation, serving,
// reloading on SIGHUP and on file changes, and graceful shutdown.
//
// The crishim command parses flags over a loaded Config, then calls Run to
// serve, or Check for crishim validate:
//
//	cfg, err := daemon.LoadConfig(path, false)
//	if err != nil {
//		return err
//	}
//	if problems := cfg.Validate(); len(problems) > 0 {
//		return daemon.InvalidConfig(path, problems)
//	}
//	return daemon.Run(ctx, cfg, path, daemon.NewLogger(cfg.Log, os.Stderr), sigs)
package daemon
