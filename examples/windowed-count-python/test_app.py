"""Native unit tests of the windowed-count transform: ``python3 -m unittest`` (SDK on PYTHONPATH)."""

import unittest

import app
import sluice_sdk as sluice
from sluice_sdk.testing import with_config


def run(config, value):
    with with_config(config):
        out = sluice.Writer()
        app.on_message(sluice.Message(value), out)
        return out.outputs


class WindowedCountTest(unittest.TestCase):
    def test_keys_and_times_the_event_from_its_fields(self):
        [output] = run({"key_field": "user.id"}, '{"user": {"id": "ada"}, "ts": 1700000000123}')
        self.assertEqual(output.key, b"ada")
        self.assertEqual(output.timestamp_ms, 1700000000123)

    def test_dead_letters_events_without_a_key_or_a_time(self):
        for value in ['{"ts": 1}', '{"user": "a"}', '{"user": "a", "ts": "x"}', '{"user": "a", "ts": true}']:
            with self.assertRaises(sluice.DeadLetter, msg=value):
                run({}, value)


if __name__ == "__main__":
    unittest.main()
