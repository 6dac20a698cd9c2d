"""Native unit tests of the redact transform: ``python3 -m unittest`` (SDK on PYTHONPATH)."""

import unittest

import app
import sluice_sdk as sluice
from sluice_sdk.testing import with_config


def run(config, msg):
    with with_config(config):
        out = sluice.Writer()
        app.on_message(msg, out)
        assert len(out) == 1, "one output per record"
        return out.outputs[0]


class RedactTest(unittest.TestCase):
    def test_masks_fields_at_any_depth_and_keeps_order(self):
        value = """{"z": 1, "email": "a@b.c", "user": {"phone": 123, "name": "Ann"},
            "contacts": [{"email": null}, {"other": {"phone": [1, 2]}}], "a": true}"""
        msg = sluice.Message(value, key="k").with_header("h", "1")
        output = run({"fields": "email, phone"}, msg)
        self.assertEqual(
            output.value,
            b'{"z":1,"email":"***","user":{"phone":"***","name":"Ann"},'
            b'"contacts":[{"email":"***"},{"other":{"phone":"***"}}],"a":true}',
        )
        self.assertEqual(output.key, b"k")
        self.assertEqual(
            output.headers, [sluice.Header("h", "1"), sluice.Header("sluice-redacted", "4")]
        )
        self.assertIsNone(output.topic)
        self.assertIsNone(output.timestamp_ms)

    def test_masked_objects_count_once(self):
        output = run({"fields": "card,cvv", "mask": "#"}, sluice.Message('{"card": {"card": "x", "cvv": 1}}'))
        self.assertEqual(output.value, b'{"card":"#"}')
        self.assertEqual(output.header("sluice-redacted"), b"1")

    def test_untouched_records_say_zero_and_are_compacted(self):
        output = run({"fields": "email"}, sluice.Message('{ "b" : 1.50 ,\n "a" : [ ] }'))
        self.assertEqual(output.value, b'{"b":1.5,"a":[]}')
        self.assertEqual(output.header("sluice-redacted"), b"0")

    def test_dead_letters_records_that_are_not_json(self):
        with self.assertRaises(sluice.DeadLetter) as caught:
            run({"fields": "email"}, sluice.Message("nope"))
        self.assertEqual(caught.exception.reason, "value is not JSON: expected ident at line 1 column 2")
        with self.assertRaises(sluice.DeadLetter) as caught:
            run({"fields": "email"}, sluice.Message())
        self.assertEqual(caught.exception.reason, "value is not JSON: record has no value")

    def test_init_requires_field_names(self):
        with self.assertRaises(sluice.Fatal) as caught:
            app.setup(sluice.Config([("mask", "#")]))
        self.assertEqual(caught.exception.reason, 'missing config key "fields"')
        with self.assertRaises(sluice.Fatal) as caught:
            app.setup(sluice.Config([("fields", " , ")]))
        self.assertTrue(caught.exception.reason.startswith('invalid config "fields"'))
        app.setup(sluice.Config([("fields", "ssn")]))


if __name__ == "__main__":
    unittest.main()
