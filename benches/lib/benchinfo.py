# benchinfo.py — facts about the machine and the binary for the benchmark summaries in benches/.
# Imported by the scripts' summary code (sys.path.insert(0, "<benches>/lib")).
import os, platform, subprocess


def fs_type(path):
    """The type of the file system holding path (findmnt), or "?"."""
    try:
        return subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T", path], capture_output=True,
                              text=True).stdout.strip() or "?"
    except OSError:
        return "?"


def cpu_model():
    """The first "model name" of /proc/cpuinfo, or "?"."""
    try:
        for l in open("/proc/cpuinfo"):
            if l.startswith("model name"):
                return l.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def binary_version(binary):
    """What `binary --version` prints, or "?"."""
    try:
        return subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def machine_line():
    """ "<cpu model>, <n> CPUs, Linux <release>" """
    return "%s, %d CPUs, Linux %s" % (cpu_model(), os.cpu_count() or 0, platform.release())
