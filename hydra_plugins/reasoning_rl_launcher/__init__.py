"""Hydra instantiates launchers only from the `hydra_plugins` package: these names are the ones the
launcher profiles (conf/hydra/launcher/*.yaml) put in `_target_`. The code lives in
reasoning_rl/launching/launcher.py, which also registers the profiles' schemas."""

from reasoning_rl.launching import launcher as _launcher


class SweepSlurmLauncher(_launcher.SweepSlurmLauncher):
    pass


class SweepLocalLauncher(_launcher.SweepLocalLauncher):
    pass
