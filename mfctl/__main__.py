from mfctl.cli import main

main()
