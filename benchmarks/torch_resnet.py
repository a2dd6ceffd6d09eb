"""torchvision's resnet18 in plain torch.nn (no torchvision), named one-to-one with it: the
reference that `tests/interop/test_from_torch.py` imports into difprog and that
`benchmarks/resnet.py` times. torch is passed in, so importing this module needs no torch."""

from __future__ import annotations


def torch_resnet18(torch, num_classes):
    """torchvision's resnet18: conv1, bn1, relu, maxpool, layer1..layer4 of two BasicBlocks,
    avgpool, fc."""
    nn = torch.nn

    class BasicBlock(nn.Module):
        def __init__(self, inputs, features, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(inputs, features, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(features)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(features, features, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(features)
            self.downsample = None
            if stride != 1 or inputs != features:
                self.downsample = nn.Sequential(nn.Conv2d(inputs, features, 1, stride, bias=False),
                                                nn.BatchNorm2d(features))

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            inputs = 64
            for i, features in enumerate((64, 128, 256, 512), start=1):
                stride = 1 if i == 1 else 2
                setattr(self, f"layer{i}", nn.Sequential(BasicBlock(inputs, features, stride),
                                                         BasicBlock(features, features, 1)))
                inputs = features
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512, num_classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return ResNet18()


def torch_blocks(torch, net):
    """`net`'s stages as a ModuleDict in order, keyed like benchmarks/resnet.py's BLOCKS with '_'
    for '.': stem, layer1_0 ... layer4_1, head (sharing `net`'s modules)."""
    nn = torch.nn
    blocks = {"stem": nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)}
    for stage in range(1, 5):
        for index, block in enumerate(getattr(net, f"layer{stage}")):
            blocks[f"layer{stage}_{index}"] = block
    blocks["head"] = nn.Sequential(net.avgpool, nn.Flatten(), net.fc)
    return nn.ModuleDict(blocks)
