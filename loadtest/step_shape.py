"""A step load for Locust: hold each user level for a fixed time, then stop.

    locust -f loadtest/locustfile.py,loadtest/step_shape.py --headless --host localhost:8001 \
        TritonGrpcUser --steps "1 4 16" --step-seconds 10

Kept apart from the users so an interactive `locust -f loadtest/locustfile.py` is not forced
into a shape. Locust ticks the shape once a second, so a step starts up to a second after
its nominal time; the recorder notes the real start and end of every step. Locust loads the
files in the order given: the locustfile first, which makes `loadtest` importable from any cwd.
"""

from locust import LoadTestShape, events

from loadtest import recorder
from loadtest.recorder import parse_levels


@events.init_command_line_parser.add_listener
def _arguments(parser):
    group = parser.add_argument_group("finsent step load")
    group.add_argument("--steps", default="1 4 16", help='user levels, e.g. "1 4 16" (default)')
    group.add_argument("--step-seconds", type=float, default=10.0, help="seconds per level (default 10)")


class StepLoad(LoadTestShape):
    """Each level of --steps for --step-seconds, all users started at once, then stop."""

    def tick(self):
        options = self.runner.environment.parsed_options
        levels = parse_levels(options.steps)
        index = int(self.get_run_time() // options.step_seconds)
        active = recorder.ACTIVE
        if index >= len(levels):
            if active:
                active.end_step()
            return None
        if active and active.step != index:
            active.total_steps = len(levels)
            active.begin_step(index, levels[index])
        return levels[index], max(levels) * 10  # a spawn rate that starts a level at once
