"""``pumpctl demo``: the README's main job - a narrated norepinephrine course on the
emulated NE-1000 with the real safety process."""
