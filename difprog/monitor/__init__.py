"""Watching a network learn: gradient flow, update ratios, dead and saturated units, and the
first non-finite gate, recorded inside the jitted training step.

Every `every` steps the step records, from what it already computed (no second forward pass, no
host callback): the loss; per weight its gradient norm and the norm of its update against its
own; per activation layer the mean and standard deviation of its outputs, the fraction of dead
ReLU units and of saturated sigmoid or tanh outputs. `Monitor` keeps the records and turns them
into diagnoses (kinds: vanishing, exploding, dead, saturated, update_ratio, nonfinite), one log
line when each starts and stops, with the `Thresholds` documented there. When the loss or a
gradient becomes non-finite, `first_nonfinite` names the gate and layer where it began.

`difprog train --monitor` does all of this and writes health.json, health.png and health.html
(`write_health`). In a loop of your own:

    watch = monitor.watch(model, x, every=10)
    mon = monitor.Monitor(watch)

    @functools.partial(jax.jit, static_argnames="record")  # a program with, one without
    def step(params, opt_state, x, y, record):
        def loss(p):
            out = model.run(p, x, capture=watch.capture)
            return gates.softmax_cross_entropy(out.output, y), out.captured
        (value, acts), grads = jax.value_and_grad(loss, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        health = monitor.measure(watch, params, grads, updates, acts, value) if record else None
        return optax.apply_updates(params, updates), opt_state, value, health

    for t, (x, y) in enumerate(batches):
        params, opt_state, value, health = step(params, opt_state, x, y, t % watch.every == 0)
        if t % watch.every == 0:
            for line in mon.add(t, health):
                print(line)
    monitor.write_health("run", mon)
"""

from difprog.monitor._diagnose import KINDS, Diagnosis, diagnose
from difprog.monitor._health import Health
from difprog.monitor._measure import measure, measured, pack, unpack
from difprog.monitor._monitor import Monitor, summary
from difprog.monitor._nonfinite import Origin, first_nonfinite
from difprog.monitor._watch import Thresholds, Watch, watch
from difprog.monitor._write import FILES, resume_health, write_health

__all__ = ["FILES", "KINDS", "Diagnosis", "Health", "Monitor", "Origin", "Thresholds", "Watch",
           "diagnose", "first_nonfinite", "measure", "measured", "pack", "resume_health",
           "summary", "unpack", "watch", "write_health"]
