"""pongxp: a policy-gradient agent that learns Pong from pixels, on NumPy or CuPy.

The package is one module per job:

- ``config``      every setting, declared once with its flag, help and bounds
- ``backend``     picks the array namespace ``xp`` (NumPy, CuPy or array-api-strict)
                  and moves data between host and device; the only module that
                  knows which library it is
- ``preprocess``  210x160x3 screen -> 6400 binary pixels (host)
- ``policy``      weight init, forward pass, backward pass (``xp`` math)
- ``returns``     discounted, per-point returns and their standardisation (``xp``)
- ``optim``       RMSProp, Adam and gradient clipping (``xp``)
- ``update``      one policy-gradient update over a batch of episodes (``xp``)
- ``batch``       stacks episodes into one compact host batch
- ``slot_share``  where a slot's share of a batch of steps ends (``--batch-steps``)
- ``rollout``     plays episodes in the ALE emulator on the CPU
- ``workers``     runs several rollout actors in parallel processes
- ``ray_pool``    the same actors on Ray, locally or on a cluster (extra ``ray``)
- ``committed``   the training state at a batch boundary
- ``checkpoint``  atomic save, strict load
- ``metrics``     the per-episode JSONL log, written and read back (strictly, as input)
- ``run_folder``  a run is a folder: hands out every path of a run, its manifest and lock
- ``trainer``     the training loop
- ``interrupts``  Ctrl-C, SIGTERM and SIGHUP: one way to stop, at any moment
- ``progress``    the progress bar (terminal) or plain lines (logs) during training
- ``evaluate``    plays N games from a checkpoint: score and win rate
- ``plot``        learning curves from metrics logs (matplotlib, extra ``plot``)
- ``video``       MP4/GIF of the agent playing, at game speed (imageio, extra ``video``)
- ``weights_picture`` W1's rows as 80x80 images, what the network learned (Pillow, extra ``plot``)
- ``diagnostics`` per-batch figures of the policy for TensorBoard (``xp``)
- ``tensorboard_log`` TensorBoard event files from training or a log (extra ``tensorboard``)
- ``extras``      imports optional dependencies, naming the pip extra when missing
- ``cli``         the ``train.py`` / ``python -m pongxp`` command line
"""

__version__ = "0.1.0"
