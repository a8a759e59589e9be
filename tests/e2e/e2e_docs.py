#!/usr/bin/env python3
"""e2e_docs.py — the docs agree with the programs: every long flag that
`wsnotifyd --help` / `wsnotifyctl --help` prints is in its man page and in the
README, every flag of the man page is in --help, and the man pages are
mandoc -Tlint clean (when mandoc is installed)."""
import os
import re
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e_support as es  # noqa: E402

SRCDIR = os.environ.get("WSN_SRCDIR", os.path.join(os.path.dirname(__file__), "..", ".."))
PROGRAMS = {
    "wsnotifyd": (os.environ.get("WSNOTIFYD", "./wsnotifyd"), "man/wsnotifyd.8"),
    "wsnotifyctl": (os.environ.get("WSNOTIFYCTL", "./wsnotifyctl"), "man/wsnotifyctl.1"),
}
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]")


def help_flags(binary):
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    return set(FLAG.findall(out.stdout))


def man_flags(path):
    with open(os.path.join(SRCDIR, path), encoding="utf-8") as f:
        text = f.read()
    # mdoc writes a long flag as ".Fl \-name" (Fl adds the first dash).
    return {"--" + m.replace("\\-", "-") for m in re.findall(r"Fl \\-([a-z0-9\\-]+)", text)}


class DocsAgree(unittest.TestCase):
    def test_help_flags_in_man_page_and_back(self):
        for name, (binary, man) in PROGRAMS.items():
            with self.subTest(program=name):
                h = help_flags(binary)
                m = man_flags(man)
                self.assertTrue(h, "no flags found in --help")
                self.assertEqual(sorted(h - m), [], f"in {name} --help but not in {man}")
                self.assertEqual(sorted(m - h), [], f"in {man} but not in {name} --help")

    def test_help_flags_in_readme(self):
        with open(os.path.join(SRCDIR, "README.md"), encoding="utf-8") as f:
            readme = f.read()
        for name, (binary, _) in PROGRAMS.items():
            for flag in sorted(help_flags(binary)):
                with self.subTest(program=name, flag=flag):
                    self.assertTrue(flag in readme, f"{flag} is not in README.md")

    def test_usage_errors_name_the_flag(self):
        binary = PROGRAMS["wsnotifyd"][0]
        for args, flag in [(["--port", "0"], "--port"), (["--workers", "0"], "--workers"),
                           (["--port", "65536"], "--port"), (["--nope"], "--nope"),
                           (["--grpc-port", "x"], "--grpc-port")]:
            with self.subTest(args=args):
                out = subprocess.run([binary] + args, capture_output=True, text=True, timeout=10)
                self.assertEqual(out.returncode, 2)
                self.assertIn(flag, out.stderr)
                self.assertEqual(len(out.stderr.strip().splitlines()), 1, out.stderr)

    def test_missing_secret_is_a_clear_error(self):
        binary = PROGRAMS["wsnotifyd"][0]
        env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET"}
        out = subprocess.run([binary, "--port", "1"], capture_output=True, text=True,
                             timeout=10, env=env)
        self.assertEqual(out.returncode, 1)
        self.assertIn("JWT_SECRET", out.stderr)
        out = subprocess.run([binary, "--jwt-secret-file", "/nonexistent/secret"],
                             capture_output=True, text=True, timeout=10, env=env)
        self.assertEqual(out.returncode, 1)
        self.assertIn("/nonexistent/secret", out.stderr)

    def test_man_pages_lint_clean(self):
        mandoc = shutil.which("mandoc")
        if mandoc is None:
            self.skipTest("mandoc not installed")
        for _, man in PROGRAMS.values():
            out = subprocess.run([mandoc, "-Tlint", "-Wwarning", os.path.join(SRCDIR, man)],
                                 capture_output=True, text=True, timeout=10)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)


if __name__ == "__main__":
    es.unittest_main()
