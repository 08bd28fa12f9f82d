from bootc_py.cli import main

main()
