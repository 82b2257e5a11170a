"""``python -m robustbench_seg`` (and ``torchrun -m robustbench_seg``): the robustseg CLI."""

from robustbench_seg.cli import main

if __name__ == "__main__":
    main()
