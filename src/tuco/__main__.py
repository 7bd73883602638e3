from tuco.cli import main

main()
