module example.com/e2e-thirdparty

go 1.22
