module example.com/e2e-services

go 1.22
