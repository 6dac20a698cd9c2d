"""Unit tests of the transform, run natively: ``./test.sh`` (``python3 -m unittest``)."""

import unittest

import app
import sluice_sdk as sluice


class TransformTest(unittest.TestCase):
    def test_tags_records_and_skips_tombstones(self):
        out = sluice.Writer()
        app.on_message(sluice.Message("hello", key="k"), out)
        output = out.outputs[0]
        self.assertEqual(output.value, b"hello")
        self.assertEqual(output.key, b"k")
        self.assertEqual(output.header("processed-by"), b"{{name}}")

        with self.assertRaises(sluice.Skip):
            app.on_message(sluice.Message(), sluice.Writer())


if __name__ == "__main__":
    unittest.main()
